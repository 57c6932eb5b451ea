//! The CLI's resource commands (`volume`, `node`, `setting`, `orphan`, `backup`,
//! `recurring-job`): clients of the REST
//! API that send the requests of `ironhorn_api::manager_api`, built from the structs the
//! server parses. Output as a table (default), JSON or YAML; sizes in human units; exit codes
//! say what kind of failure it was (see [`exit`]).

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ironhorn_api::client::{ApiClient, ClientError, Timeouts};
use ironhorn_api::{ErrorCode, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::units::parse_size;

pub use auth::{audit, token, user, AuditCli, TokenCli, UserCli};
pub use backup::{backup, secret, BackupCli, SecretCli};
pub use manager::{manager, ManagerCli};
pub use node::{node, NodeCli};
pub use recurring::{recurring_job, RecurringJobCli};
pub use setting::{orphan, setting, OrphanCli, SettingCli};
pub use volume::{snapshot_table, volume, VolumeCli};

/// `println!` that does not panic when the reader went away (`| head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that does not panic when the reader went away.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

// After the macros, which they use.
mod auth;
mod backup;
mod manager;
mod node;
mod recurring;
mod setting;
mod volume;

/// Exit codes of client commands.
pub mod exit {
    /// Something else failed (the message says what).
    pub const FAILED: u8 = 1;
    /// Bad arguments or a request the server found invalid.
    pub const INVALID: u8 = 2;
    /// No such volume, node, disk, snapshot or setting.
    pub const NOT_FOUND: u8 = 3;
    /// The request conflicts with the current state (exists already, attached elsewhere...).
    pub const CONFLICT: u8 = 4;
    /// The server could not be reached.
    pub const UNREACHABLE: u8 = 5;
    /// `--wait` gave up before the state was reached.
    pub const TIMEOUT: u8 = 6;
    /// No valid credentials, or the user's role may not do this.
    pub const DENIED: u8 = 7;
}

/// A failed client command.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, Failure>;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The Ironhorn API.
    #[arg(
        long,
        global = true,
        env = "IRONHORN_URL",
        default_value = "http://127.0.0.1:9500"
    )]
    pub server: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// A file holding the API token to send (else IRONHORN_TOKEN, else the admin token a
    /// server on this machine wrote: $IRONHORN_DATA_DIR/admin.token or
    /// /var/lib/ironhorn/admin.token).
    #[arg(long, global = true, env = "IRONHORN_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

/// The token the CLI sends, and where it came from.
fn find_token(opts: &ClientOpts) -> Result<Option<(String, String)>> {
    if let Some(path) = &opts.token_file {
        let token = crate::runtime::read_secret_file(path)
            .map_err(|e| Failure::new(exit::INVALID, format!("{e:#}")))?;
        return Ok(Some((token, path.display().to_string())));
    }
    if let Some(token) = std::env::var("IRONHORN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some((token.trim().to_string(), "IRONHORN_TOKEN".into())));
    }
    let data_dir =
        std::env::var("IRONHORN_DATA_DIR").unwrap_or_else(|_| "/var/lib/ironhorn".into());
    let path = std::path::Path::new(&data_dir).join("admin.token");
    Ok(crate::runtime::read_secret_file(&path)
        .ok()
        .map(|t| (t, path.display().to_string())))
}

#[derive(Debug, Clone, Args)]
pub struct WaitOpts {
    /// Wait until the change is done.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 5m.
    #[arg(long, default_value = "5m", value_parser = crate::runtime::parse_duration)]
    pub timeout: Duration,
}

/// A blocking client of the REST API for one command.
struct Client {
    base: String,
    http: ApiClient,
    runtime: tokio::runtime::Runtime,
    /// Where the token came from (for errors), if there was one.
    token_source: Option<String>,
}

impl Client {
    fn new(opts: &ClientOpts) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(exit::FAILED, format!("starting the client: {e}")))?;
        let token = find_token(opts)?;
        Ok(Client {
            base: opts.server.trim_end_matches('/').to_string(),
            http: ApiClient::new(Timeouts {
                short: Duration::from_secs(30),
                normal: Duration::from_secs(120),
                long: Duration::from_secs(24 * 3600),
            })
            .with_bearer(token.as_ref().map(|(t, _)| t.as_str())),
            runtime,
            token_source: token.map(|(_, from)| from),
        })
    }

    fn call<R: DeserializeOwned>(&self, request: Request<R>) -> Result<R> {
        let what = format!("{} {}", request.method.as_str(), request.path);
        self.runtime
            .block_on(self.http.call(&self.base, request))
            .map_err(|e| match e {
                ClientError::Unreachable { source, .. } => {
                    let why = ironhorn_api::client::causes(&source);
                    let hint = if why.to_lowercase().contains("certificate") {
                        format!("does the server's certificate name this address, and is its authority trusted? (the system's, or a PEM file in {})", ironhorn_api::client::CA_CERT_ENV)
                    } else {
                        "is `ironhorn server` running? (--server or IRONHORN_URL)".to_string()
                    };
                    Failure::new(
                        exit::UNREACHABLE,
                        format!("cannot reach the Ironhorn API at {} ({why}); {hint}", self.base),
                    )
                }
                ClientError::Api { body, .. } => {
                    let code = match body.code {
                        ErrorCode::Invalid => exit::INVALID,
                        ErrorCode::NotFound => exit::NOT_FOUND,
                        ErrorCode::AlreadyExists | ErrorCode::Conflict => exit::CONFLICT,
                        ErrorCode::Unauthenticated | ErrorCode::Forbidden => exit::DENIED,
                        _ => exit::FAILED,
                    };
                    let message = match (body.code, &self.token_source) {
                        (ErrorCode::Unauthenticated, Some(from)) => {
                            format!("{} (the token from {from})", body.message)
                        }
                        (ErrorCode::Unauthenticated, None) => format!(
                            "{} — no token found: set IRONHORN_TOKEN or IRONHORN_TOKEN_FILE",
                            body.message
                        ),
                        _ => body.message,
                    };
                    Failure::new(code, message)
                }
                ClientError::BadAnswer { message, .. } => {
                    Failure::new(exit::FAILED, format!("unreadable answer to {what}: {message}"))
                }
            })
    }
}

/// Prints `value` as JSON or YAML, or runs `table` for the default output.
fn print(output: Output, value: &impl Serialize, table: impl FnOnce()) -> Result<()> {
    match output {
        Output::Table => table(),
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => out!("{}", serde_yaml_ng::to_string(value).unwrap_or_default()),
    }
    Ok(())
}

/// What a command that answers nothing prints as JSON or YAML.
fn nothing() -> Value {
    Value::Object(serde_json::Map::new())
}

fn labels(list: &[String]) -> Result<BTreeMap<String, String>> {
    list.iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Failure::new(exit::INVALID, format!("label {l:?} is not KEY=VALUE")))
        })
        .collect()
}

fn tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn size_arg(text: &str) -> Result<u64> {
    parse_size(text).map_err(|e| Failure::new(exit::INVALID, e))
}

/// An option whose values are one of the API's enums (`--frontend blockdev`), read by its
/// JSON name.
fn wire_arg<T: DeserializeOwned>(option: &str, text: &str) -> Result<T> {
    serde_json::from_value(Value::String(text.to_string()))
        .map_err(|e| Failure::new(exit::INVALID, format!("--{option} {text:?}: {e}")))
}
