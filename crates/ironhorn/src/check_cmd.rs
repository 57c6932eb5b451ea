//! `ironhorn check`: the node preflight (see `ironhorn_node::preflight`), as a table or JSON.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ironhorn_node::preflight::{self, Status};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckOutput {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The node's data directory (its default disk).
    #[arg(long, env = "IRONHORN_DATA_DIR", default_value = "/var/lib/ironhorn")]
    pub data_dir: PathBuf,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: CheckOutput,
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let report = preflight::evaluate(&preflight::gather(&args.data_dir, None));
    let mut out = std::io::stdout().lock();
    match args.output {
        CheckOutput::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        CheckOutput::Table => {
            let _ = writeln!(out, "kernel {}", report.kernel);
            for item in &report.items {
                let status = match (item.status, item.required) {
                    (Status::Ok, _) => "ok",
                    (Status::Warning, _) => "warning",
                    (Status::Missing, true) => "MISSING",
                    (Status::Missing, false) => "missing",
                };
                let _ = writeln!(out, "{status:<8} {:<20} {}", item.name, item.detail);
                if !item.fix.is_empty() {
                    let _ = writeln!(out, "{:<8} {:<20} fix: {}", "", "", item.fix);
                }
            }
            let _ = writeln!(
                out,
                "{}",
                if report.ready {
                    "this node can serve volumes"
                } else {
                    "this node cannot serve volumes: install or enable what is MISSING"
                }
            );
        }
    }
    if report.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
