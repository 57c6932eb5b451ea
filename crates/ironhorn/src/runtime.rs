//! Running a server subcommand: a tokio runtime, a shutdown token cancelled on SIGINT or
//! SIGTERM, and the data-path servers' poll window option.

use std::future::Future;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

pub fn run_until_signal<F, Fut>(body: F) -> Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            on_signal.cancel();
        });
        body(shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

/// The poll window of a data-path server (see `ironhorn_runtime::poll_window`).
#[derive(Debug, Args)]
pub struct PollArgs {
    /// While requests arrive, keep CPUs warm at idle priority until this long after the last
    /// one (saves waking a halted CPU per hop on VMs); 0 turns it off; `auto` is 1ms unless
    /// the process runs under a CPU quota (a Kubernetes CPU limit), where it is off.
    #[arg(long, default_value = "auto", value_parser = parse_poll_window)]
    pub poll_window: PollWindowSetting,
}

/// `--poll-window`: `auto` or a fixed duration.
#[derive(Debug, Clone, Copy)]
pub enum PollWindowSetting {
    Auto,
    Fixed(Duration),
}

impl PollArgs {
    pub fn install(&self) {
        use ironhorn_runtime::poll_window;
        let window = match self.poll_window {
            PollWindowSetting::Fixed(window) => window,
            PollWindowSetting::Auto if poll_window::cpu_quota_applies() => {
                eprintln!("poll window off: this process runs under a CPU quota");
                Duration::ZERO
            }
            PollWindowSetting::Auto => Duration::from_millis(1),
        };
        poll_window::install(window, poll_window::default_threads());
    }
}

fn parse_poll_window(text: &str) -> Result<PollWindowSetting, String> {
    if text == "auto" {
        return Ok(PollWindowSetting::Auto);
    }
    parse_duration(text).map(PollWindowSetting::Fixed)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))
}

/// The secret in a file (a token, the cluster secret), without surrounding whitespace.
pub fn read_secret_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading credentials from {}", path.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        anyhow::bail!("{} is empty: it should hold a token", path.display());
    }
    Ok(secret)
}

/// Writes a secret readable by this user only: a temporary file made with mode 0600,
/// synced, renamed into place, the directory synced.
pub fn write_secret_file(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}
